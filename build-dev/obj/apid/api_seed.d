build-dev/obj/apid/api_seed.o: apid/api_seed.c apid/api_seed.h \
 apid/apid.h common/http.h apid/api_auth.h apid/api_export.h \
 apid/api_tenant.h common/clock.h common/strutil.h common/xalloc.h
apid/api_seed.h:
apid/apid.h:
common/http.h:
apid/api_auth.h:
apid/api_export.h:
apid/api_tenant.h:
common/clock.h:
common/strutil.h:
common/xalloc.h:
