build-dev/obj/anomalyd/anomaly_mad.o: anomalyd/anomaly_mad.c \
 anomalyd/anomaly_mad.h anomalyd/anomaly_case.h common/test.h \
 common/xalloc.h
anomalyd/anomaly_mad.h:
anomalyd/anomaly_case.h:
common/test.h:
common/xalloc.h:
