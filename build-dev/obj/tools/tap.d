build-dev/obj/tools/tap.o: tools/tap.c common/clock.h common/log.h \
 common/msg.h common/schema.h common/sig.h common/strutil.h \
 common/xalloc.h
common/clock.h:
common/log.h:
common/msg.h:
common/schema.h:
common/sig.h:
common/strutil.h:
common/xalloc.h:
