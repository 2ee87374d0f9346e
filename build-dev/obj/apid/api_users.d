build-dev/obj/apid/api_users.o: apid/api_users.c apid/api_users.h \
 apid/apid.h common/http.h apid/api_auth.h apid/api_devices.h \
 apid/dev_store.h common/bucket.h common/clock.h common/log.h \
 common/test.h common/xalloc.h
apid/api_users.h:
apid/apid.h:
common/http.h:
apid/api_auth.h:
apid/api_devices.h:
apid/dev_store.h:
common/bucket.h:
common/clock.h:
common/log.h:
common/test.h:
common/xalloc.h:
