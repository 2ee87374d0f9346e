build-dev/obj/anomalyd/anomaly_hst.o: anomalyd/anomaly_hst.c \
 anomalyd/anomaly_hst.h anomalyd/anomaly_case.h common/test.h \
 common/xalloc.h
anomalyd/anomaly_hst.h:
anomalyd/anomaly_case.h:
common/test.h:
common/xalloc.h:
