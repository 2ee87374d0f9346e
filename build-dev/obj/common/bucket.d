build-dev/obj/common/bucket.o: common/bucket.c common/bucket.h \
 common/clock.h common/test.h common/xalloc.h
common/bucket.h:
common/clock.h:
common/test.h:
common/xalloc.h:
