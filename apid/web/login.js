// Log in with a user and password: apid answers with an HttpOnly session
// cookie (the page never sees it) and the dashboard uses it, its
// WebSocket streams too.
"use strict";
document.getElementById("login").addEventListener("submit", async (e) => {
  e.preventDefault();
  const why = document.getElementById("why");
  why.textContent = "";
  const r = await fetch("/api/login", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({
      user: document.getElementById("user").value,
      password: document.getElementById("password").value,
    }),
  });
  if (r.ok) {
    location.href = "/";
    return;
  }
  const body = await r.json().catch(() => ({}));
  why.textContent = (body.error && body.error.message) || "login failed (" + r.status + ")";
});
