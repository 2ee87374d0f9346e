build-dev/obj/apid/api_prom.o: apid/api_prom.c apid/api_prom.h \
 apid/apid.h common/http.h apid/prom_ql.h common/clock.h common/strutil.h \
 common/test.h common/xalloc.h
apid/api_prom.h:
apid/apid.h:
common/http.h:
apid/prom_ql.h:
common/clock.h:
common/strutil.h:
common/test.h:
common/xalloc.h:
