build-dev/obj/anomalyd/anomaly_ewma.o: anomalyd/anomaly_ewma.c \
 anomalyd/anomaly_ewma.h anomalyd/anomaly_case.h common/test.h \
 common/xalloc.h
anomalyd/anomaly_ewma.h:
anomalyd/anomaly_case.h:
common/test.h:
common/xalloc.h:
