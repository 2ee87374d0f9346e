build-dev/obj/alertd/alert_ruleset.o: alertd/alert_ruleset.c \
 alertd/alert_ruleset.h alertd/alert_channel.h alertd/alert_rule.h \
 alertd/alert_file.h common/clock.h common/log.h common/rpc.h \
 common/series.h common/strutil.h common/test.h common/xalloc.h
alertd/alert_ruleset.h:
alertd/alert_channel.h:
alertd/alert_rule.h:
alertd/alert_file.h:
common/clock.h:
common/log.h:
common/rpc.h:
common/series.h:
common/strutil.h:
common/test.h:
common/xalloc.h:
