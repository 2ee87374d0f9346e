build-dev/obj/apid/api_telemetry.o: apid/api_telemetry.c \
 apid/api_telemetry.h apid/apid.h common/http.h apid/api_export.h \
 common/series.h common/strutil.h common/xalloc.h
apid/api_telemetry.h:
apid/apid.h:
common/http.h:
apid/api_export.h:
common/series.h:
common/strutil.h:
common/xalloc.h:
