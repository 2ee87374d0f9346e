build-dev/obj/alertd/alert_channel.o: alertd/alert_channel.c \
 alertd/alert_channel.h alertd/alert_rule.h alertd/alert_sink_email.h \
 alertd/alert_sink_exec.h alertd/alert_sink_mqtt.h \
 alertd/alert_sink_webhook.h common/test.h common/xalloc.h
alertd/alert_channel.h:
alertd/alert_rule.h:
alertd/alert_sink_email.h:
alertd/alert_sink_exec.h:
alertd/alert_sink_mqtt.h:
alertd/alert_sink_webhook.h:
common/test.h:
common/xalloc.h:
