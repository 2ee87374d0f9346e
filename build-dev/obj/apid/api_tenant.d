build-dev/obj/apid/api_tenant.o: apid/api_tenant.c apid/api_tenant.h \
 apid/apid.h common/http.h common/series.h common/test.h
apid/api_tenant.h:
apid/apid.h:
common/http.h:
common/series.h:
common/test.h:
