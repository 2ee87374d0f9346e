build-dev/obj/alertd/alert_engine.o: alertd/alert_engine.c \
 alertd/alert_engine.h alertd/alert_rule.h common/schema.h \
 alertd/alert_series.h common/clock.h common/series.h common/strutil.h \
 common/test.h common/xalloc.h
alertd/alert_engine.h:
alertd/alert_rule.h:
common/schema.h:
alertd/alert_series.h:
common/clock.h:
common/series.h:
common/strutil.h:
common/test.h:
common/xalloc.h:
