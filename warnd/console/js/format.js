// Words and numbers as the duty officer reads them. Times come from the API in the district's time zone
// (ISO 8601 with its offset) and are shown as that wall-clock time, whatever the browser's zone.

const ROLE_RANK = { viewer: 0, operator: 1, approver: 2, admin: 3 };
export const ROLE_LABELS = { viewer: "查看员", operator: "值班员", approver: "审批人", admin: "管理员" };
export const COLOURS = ["red", "orange", "yellow", "blue"];
export const COLOUR_LABELS = { red: "红色", orange: "橙色", yellow: "黄色", blue: "蓝色" };
export const CAP_STATUS = { Actual: "正式", Exercise: "演练", Test: "测试", Draft: "草稿", System: "系统" };
export const MSG_TYPES = { Alert: "首次发布", Update: "更新", Cancel: "解除" };
export const ALERT_STATES = {
  active: "生效中",
  updated: "已更新",
  cancelled: "已解除",
  expired: "已过期",
  inactive: "未生效",
};
export const DELIVERY_STATUS = {
  queued: "排队中",
  sent: "已发送",
  delivered: "已送达",
  failed: "失败",
  failed_over: "已转备用渠道",
  expired: "已过期未发",
  suppressed: "已被更高级别覆盖",
  superseded: "已被更新取代",
};
export const BROADCAST_STATUS = {
  pending: "待审批",
  sent: "已发送",
  rejected: "已驳回",
  withdrawn: "已撤回",
  failed: "发送失败",
};
export const STYLES = { sms: "短信", spoken: "大喇叭语音", push: "推送通知" };
export const FEED_STATES = {
  ok: "正常",
  failing: "连续失败",
  stale: "超时未更新",
  "never polled": "尚未拉取",
  disabled: "已停用",
};

export function can(role, needed) {
  return role in ROLE_RANK && ROLE_RANK[role] >= ROLE_RANK[needed];
}

export function colourLabel(colour, given) {
  return given || COLOUR_LABELS[colour] || "无颜色";
}

/** "2024-07-12T05:30:00+08:00" → "07-12 05:30" (with the year when ``full``, and seconds). */
export function when(iso, { full = false } = {}) {
  if (!iso) return "—";
  const match = /^(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d)(?::(\d\d))?/.exec(iso);
  if (!match) return String(iso);
  const [, year, month, day, hour, minute, second] = match;
  return full ? `${year}-${month}-${day} ${hour}:${minute}:${second || "00"}` : `${month}-${day} ${hour}:${minute}`;
}

/** How long ago, roughly: "刚刚", "5 分钟前", "3 小时前". */
export function ago(iso, now = Date.now()) {
  const then = Date.parse(iso);
  if (Number.isNaN(then)) return "";
  const seconds = Math.round((now - then) / 1000);
  if (seconds < 0) return `${duration(-seconds)}后`;
  if (seconds < 45) return "刚刚";
  return `${duration(seconds)}前`;
}

/** 45 → "45 秒", 150 → "2 分 30 秒", 3900 → "1 小时 5 分". */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(Number(seconds))) return "—";
  const total = Math.round(Number(seconds));
  if (total < 60) return `${total} 秒`;
  if (total < 3600) {
    const rest = total % 60;
    return rest ? `${Math.floor(total / 60)} 分 ${rest} 秒` : `${total / 60} 分钟`;
  }
  if (total < 86400) {
    const minutes = Math.floor((total % 3600) / 60);
    return `${Math.floor(total / 3600)} 小时${minutes ? ` ${minutes} 分` : ""}`;
  }
  return `${Math.floor(total / 86400)} 天`;
}

/** A share 0..1 as a percentage, rounded down (89.96 % is not "90 %": the target is not met). */
export function percent(share) {
  if (share === null || share === undefined || Number.isNaN(Number(share))) return "—";
  return `${(Math.floor(Number(share) * 1000) / 10).toFixed(1)}%`;
}

/** n of total, as "n/total". */
export function ratio(n, total) {
  return `${n ?? 0}/${total ?? 0}`;
}

/** A share n/total that is safe with total 0 (null: nothing to measure). */
export function share(n, total) {
  return total ? (n || 0) / total : null;
}

/** A count with thousands separators; "—" for none. */
export function number(n) {
  return n === null || n === undefined ? "—" : Number(n).toLocaleString("zh-CN");
}
