build-dev/obj/apid/dev_store.o: apid/dev_store.c apid/dev_store.h \
 apid/dev_state.h common/clock.h common/log.h common/test.h \
 common/xalloc.h
apid/dev_store.h:
apid/dev_state.h:
common/clock.h:
common/log.h:
common/test.h:
common/xalloc.h:
