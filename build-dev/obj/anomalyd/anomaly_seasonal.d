build-dev/obj/anomalyd/anomaly_seasonal.o: anomalyd/anomaly_seasonal.c \
 anomalyd/anomaly_seasonal.h anomalyd/anomaly_case.h common/test.h \
 common/xalloc.h
anomalyd/anomaly_seasonal.h:
anomalyd/anomaly_case.h:
common/test.h:
common/xalloc.h:
