build-dev/obj/common/reload.o: common/reload.c common/reload.h \
 common/cfg.h common/clock.h common/log.h common/strutil.h common/test.h \
 common/xalloc.h
common/reload.h:
common/cfg.h:
common/clock.h:
common/log.h:
common/strutil.h:
common/test.h:
common/xalloc.h:
