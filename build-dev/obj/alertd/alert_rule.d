build-dev/obj/alertd/alert_rule.o: alertd/alert_rule.c \
 alertd/alert_rule.h common/clock.h common/series.h common/strutil.h \
 common/test.h common/xalloc.h
alertd/alert_rule.h:
common/clock.h:
common/series.h:
common/strutil.h:
common/test.h:
common/xalloc.h:
