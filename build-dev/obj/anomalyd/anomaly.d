build-dev/obj/anomalyd/anomaly.o: anomalyd/anomaly.c anomalyd/anomaly.h \
 anomalyd/anomaly_ensemble.h anomalyd/anomaly_zscore.h common/test.h \
 common/xalloc.h
anomalyd/anomaly.h:
anomalyd/anomaly_ensemble.h:
anomalyd/anomaly_zscore.h:
common/test.h:
common/xalloc.h:
