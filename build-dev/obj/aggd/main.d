build-dev/obj/aggd/main.o: aggd/main.c aggd/aggd.h aggd/agg_export.h \
 common/daemon.h common/cfg.h common/log.h
aggd/aggd.h:
aggd/agg_export.h:
common/daemon.h:
common/cfg.h:
common/log.h:
