build-dev/obj/common/quota.o: common/quota.c common/quota.h \
 common/clock.h common/log.h common/test.h common/xalloc.h
common/quota.h:
common/clock.h:
common/log.h:
common/test.h:
common/xalloc.h:
