build-dev/obj/apid/dev_jobs.o: apid/dev_jobs.c apid/dev_jobs.h \
 apid/dev_store.h common/clock.h common/log.h common/test.h \
 common/xalloc.h
apid/dev_jobs.h:
apid/dev_store.h:
common/clock.h:
common/log.h:
common/test.h:
common/xalloc.h:
