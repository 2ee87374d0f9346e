build-dev/obj/tools/sim.o: tools/sim.c common/clock.h common/log.h \
 common/sig.h common/strutil.h common/xalloc.h
common/clock.h:
common/log.h:
common/sig.h:
common/strutil.h:
common/xalloc.h:
