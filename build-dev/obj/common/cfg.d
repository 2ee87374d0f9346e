build-dev/obj/common/cfg.o: common/cfg.c common/cfg.h common/clock.h \
 common/strutil.h common/test.h common/urlmask.h common/xalloc.h
common/cfg.h:
common/clock.h:
common/strutil.h:
common/test.h:
common/urlmask.h:
common/xalloc.h:
