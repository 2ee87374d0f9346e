build-dev/obj/anomalyd/anomaly_vol.o: anomalyd/anomaly_vol.c \
 anomalyd/anomaly_vol.h anomalyd/anomaly_case.h common/test.h \
 common/xalloc.h
anomalyd/anomaly_vol.h:
anomalyd/anomaly_case.h:
common/test.h:
common/xalloc.h:
