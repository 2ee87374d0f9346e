build-dev/obj/ingestd/main.o: ingestd/main.c ingestd/ingestd.h \
 common/daemon.h common/cfg.h common/log.h
ingestd/ingestd.h:
common/daemon.h:
common/cfg.h:
common/log.h:
