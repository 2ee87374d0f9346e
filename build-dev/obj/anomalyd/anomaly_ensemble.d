build-dev/obj/anomalyd/anomaly_ensemble.o: anomalyd/anomaly_ensemble.c \
 anomalyd/anomaly_ensemble.h anomalyd/anomaly_case.h \
 anomalyd/anomaly_cusum.h anomalyd/anomaly_ewma.h anomalyd/anomaly_hst.h \
 anomalyd/anomaly_mad.h anomalyd/anomaly_range.h \
 anomalyd/anomaly_seasonal.h anomalyd/anomaly_vol.h \
 anomalyd/anomaly_zscore.h common/test.h common/xalloc.h
anomalyd/anomaly_ensemble.h:
anomalyd/anomaly_case.h:
anomalyd/anomaly_cusum.h:
anomalyd/anomaly_ewma.h:
anomalyd/anomaly_hst.h:
anomalyd/anomaly_mad.h:
anomalyd/anomaly_range.h:
anomalyd/anomaly_seasonal.h:
anomalyd/anomaly_vol.h:
anomalyd/anomaly_zscore.h:
common/test.h:
common/xalloc.h:
