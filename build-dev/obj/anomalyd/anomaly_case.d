build-dev/obj/anomalyd/anomaly_case.o: anomalyd/anomaly_case.c \
 anomalyd/anomaly_case.h common/clock.h common/log.h common/strutil.h \
 common/test.h common/xalloc.h
anomalyd/anomaly_case.h:
common/clock.h:
common/log.h:
common/strutil.h:
common/test.h:
common/xalloc.h:
