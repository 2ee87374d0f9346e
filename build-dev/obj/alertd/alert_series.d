build-dev/obj/alertd/alert_series.o: alertd/alert_series.c \
 alertd/alert_series.h alertd/alert_rule.h common/schema.h common/clock.h \
 common/test.h common/xalloc.h
alertd/alert_series.h:
alertd/alert_rule.h:
common/schema.h:
common/clock.h:
common/test.h:
common/xalloc.h:
