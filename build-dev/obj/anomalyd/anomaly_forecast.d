build-dev/obj/anomalyd/anomaly_forecast.o: anomalyd/anomaly_forecast.c \
 anomalyd/anomaly_forecast.h common/clock.h common/test.h common/xalloc.h
anomalyd/anomaly_forecast.h:
common/clock.h:
common/test.h:
common/xalloc.h:
