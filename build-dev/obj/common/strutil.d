build-dev/obj/common/strutil.o: common/strutil.c common/strutil.h \
 common/test.h
common/strutil.h:
common/test.h:
