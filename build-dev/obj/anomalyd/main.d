build-dev/obj/anomalyd/main.o: anomalyd/main.c anomalyd/anomalyd.h \
 common/cfg.h common/daemon.h common/log.h
anomalyd/anomalyd.h:
common/cfg.h:
common/daemon.h:
common/log.h:
