build-dev/obj/apid/api_export.o: apid/api_export.c apid/api_export.h \
 apid/apid.h common/http.h common/clock.h common/mpjson.h common/strbuf.h \
 common/strutil.h common/test.h common/xalloc.h
apid/api_export.h:
apid/apid.h:
common/http.h:
common/clock.h:
common/mpjson.h:
common/strbuf.h:
common/strutil.h:
common/test.h:
common/xalloc.h:
