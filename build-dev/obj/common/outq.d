build-dev/obj/common/outq.o: common/outq.c common/outq.h common/msg.h \
 common/schema.h common/clock.h common/log.h common/ratelimit.h \
 common/test.h common/xalloc.h
common/outq.h:
common/msg.h:
common/schema.h:
common/clock.h:
common/log.h:
common/ratelimit.h:
common/test.h:
common/xalloc.h:
