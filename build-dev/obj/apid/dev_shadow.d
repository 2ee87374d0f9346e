build-dev/obj/apid/dev_shadow.o: apid/dev_shadow.c apid/dev_shadow.h \
 apid/dev_store.h common/clock.h common/log.h common/test.h \
 common/xalloc.h
apid/dev_shadow.h:
apid/dev_store.h:
common/clock.h:
common/log.h:
common/test.h:
common/xalloc.h:
