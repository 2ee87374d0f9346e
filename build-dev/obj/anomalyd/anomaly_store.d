build-dev/obj/anomalyd/anomaly_store.o: anomalyd/anomaly_store.c \
 anomalyd/anomaly_store.h anomalyd/anomaly.h anomalyd/anomaly_forecast.h \
 common/clock.h common/mpjson.h common/rpc.h common/series.h \
 common/strutil.h common/test.h common/xalloc.h
anomalyd/anomaly_store.h:
anomalyd/anomaly.h:
anomalyd/anomaly_forecast.h:
common/clock.h:
common/mpjson.h:
common/rpc.h:
common/series.h:
common/strutil.h:
common/test.h:
common/xalloc.h:
