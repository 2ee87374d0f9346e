build-dev/obj/anomalyd/anomalyd.o: anomalyd/anomalyd.c \
 anomalyd/anomalyd.h common/cfg.h anomalyd/anomaly.h \
 anomalyd/anomaly_case.h anomalyd/anomaly_store.h common/clock.h \
 common/daemon.h common/ep.h common/log.h common/mpjson.h common/msg.h \
 common/schema.h common/ratelimit.h common/outq.h common/reading.h \
 common/rpc.h common/series.h common/strutil.h common/test.h \
 common/xalloc.h
anomalyd/anomalyd.h:
common/cfg.h:
anomalyd/anomaly.h:
anomalyd/anomaly_case.h:
anomalyd/anomaly_store.h:
common/clock.h:
common/daemon.h:
common/ep.h:
common/log.h:
common/mpjson.h:
common/msg.h:
common/schema.h:
common/ratelimit.h:
common/outq.h:
common/reading.h:
common/rpc.h:
common/series.h:
common/strutil.h:
common/test.h:
common/xalloc.h:
