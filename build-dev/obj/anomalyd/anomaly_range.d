build-dev/obj/anomalyd/anomaly_range.o: anomalyd/anomaly_range.c \
 anomalyd/anomaly_range.h common/test.h common/xalloc.h
anomalyd/anomaly_range.h:
common/test.h:
common/xalloc.h:
