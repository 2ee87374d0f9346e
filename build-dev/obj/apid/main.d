build-dev/obj/apid/main.o: apid/main.c apid/apid.h common/http.h \
 common/daemon.h common/cfg.h common/log.h
apid/apid.h:
common/http.h:
common/daemon.h:
common/cfg.h:
common/log.h:
