build-dev/obj/apid/api_fleet.o: apid/api_fleet.c apid/api_fleet.h \
 apid/apid.h common/http.h apid/api_auth.h apid/api_devices.h \
 apid/dev_store.h apid/api_tenant.h common/clock.h common/series.h \
 common/test.h common/xalloc.h
apid/api_fleet.h:
apid/apid.h:
common/http.h:
apid/api_auth.h:
apid/api_devices.h:
apid/dev_store.h:
apid/api_tenant.h:
common/clock.h:
common/series.h:
common/test.h:
common/xalloc.h:
