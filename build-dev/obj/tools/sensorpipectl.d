build-dev/obj/tools/sensorpipectl.o: tools/sensorpipectl.c common/cfg.h \
 common/clock.h common/ep.h common/log.h common/mpjson.h common/rpc.h \
 common/strutil.h common/xalloc.h
common/cfg.h:
common/clock.h:
common/ep.h:
common/log.h:
common/mpjson.h:
common/rpc.h:
common/strutil.h:
common/xalloc.h:
