build-dev/obj/apid/api_dash.o: apid/api_dash.c apid/api_dash.h \
 apid/apid.h common/http.h apid/api_auth.h common/series.h common/log.h \
 common/test.h common/xalloc.h
apid/api_dash.h:
apid/apid.h:
common/http.h:
apid/api_auth.h:
common/series.h:
common/log.h:
common/test.h:
common/xalloc.h:
