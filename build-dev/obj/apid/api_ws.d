build-dev/obj/apid/api_ws.o: apid/api_ws.c apid/api_ws.h apid/apid.h \
 common/http.h apid/api_auth.h apid/api_tenant.h common/clock.h \
 common/ep.h common/log.h common/msg.h common/schema.h common/series.h \
 common/strbuf.h common/strutil.h common/test.h common/xalloc.h
apid/api_ws.h:
apid/apid.h:
common/http.h:
apid/api_auth.h:
apid/api_tenant.h:
common/clock.h:
common/ep.h:
common/log.h:
common/msg.h:
common/schema.h:
common/series.h:
common/strbuf.h:
common/strutil.h:
common/test.h:
common/xalloc.h:
