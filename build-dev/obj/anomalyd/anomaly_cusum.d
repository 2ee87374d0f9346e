build-dev/obj/anomalyd/anomaly_cusum.o: anomalyd/anomaly_cusum.c \
 anomalyd/anomaly_cusum.h anomalyd/anomaly_case.h common/test.h \
 common/xalloc.h
anomalyd/anomaly_cusum.h:
anomalyd/anomaly_case.h:
common/test.h:
common/xalloc.h:
