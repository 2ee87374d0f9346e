build-dev/obj/common/daemon.o: common/daemon.c common/daemon.h \
 common/cfg.h common/log.h common/reload.h common/sdnotify.h common/sig.h \
 common/test.h
common/daemon.h:
common/cfg.h:
common/log.h:
common/reload.h:
common/sdnotify.h:
common/sig.h:
common/test.h:
