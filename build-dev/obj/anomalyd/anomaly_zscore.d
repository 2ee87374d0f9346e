build-dev/obj/anomalyd/anomaly_zscore.o: anomalyd/anomaly_zscore.c \
 anomalyd/anomaly_zscore.h anomalyd/anomaly_case.h common/test.h \
 common/xalloc.h
anomalyd/anomaly_zscore.h:
anomalyd/anomaly_case.h:
common/test.h:
common/xalloc.h:
