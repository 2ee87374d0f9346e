build-dev/obj/common/ratelimit.o: common/ratelimit.c common/ratelimit.h \
 common/clock.h common/test.h
common/ratelimit.h:
common/clock.h:
common/test.h:
