build-dev/obj/apid/api_alerts.o: apid/api_alerts.c apid/api_alerts.h \
 apid/apid.h common/http.h apid/api_auth.h apid/api_tenant.h \
 common/strutil.h common/test.h common/xalloc.h
apid/api_alerts.h:
apid/apid.h:
common/http.h:
apid/api_auth.h:
apid/api_tenant.h:
common/strutil.h:
common/test.h:
common/xalloc.h:
