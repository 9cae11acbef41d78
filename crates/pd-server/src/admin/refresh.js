// Reloads the page every 30 seconds while it is visible and no form field has the focus,
// so an open overview stays current; without JavaScript the page simply stays as loaded.
"use strict";
setInterval(function () {
  var field = document.activeElement;
  var typing = field && /^(INPUT|TEXTAREA|SELECT|BUTTON)$/.test(field.tagName);
  if (document.visibilityState === "visible" && !typing) {
    location.replace(location.pathname);
  }
}, 30000);
