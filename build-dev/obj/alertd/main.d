build-dev/obj/alertd/main.o: alertd/main.c alertd/alertd.h \
 common/daemon.h common/cfg.h common/log.h
alertd/alertd.h:
common/daemon.h:
common/cfg.h:
common/log.h:
