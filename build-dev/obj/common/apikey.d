build-dev/obj/common/apikey.o: common/apikey.c common/apikey.h \
 common/log.h common/test.h common/xalloc.h
common/apikey.h:
common/log.h:
common/test.h:
common/xalloc.h:
