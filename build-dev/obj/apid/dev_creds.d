build-dev/obj/apid/dev_creds.o: apid/dev_creds.c apid/dev_creds.h \
 apid/dev_store.h common/log.h common/strutil.h common/test.h \
 common/xalloc.h
apid/dev_creds.h:
apid/dev_store.h:
common/log.h:
common/strutil.h:
common/test.h:
common/xalloc.h:
