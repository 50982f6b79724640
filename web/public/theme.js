// Applies the remembered theme before the first paint (a file, not inline: the page's
// Content-Security-Policy allows scripts from this origin only).
try {
  const theme = localStorage.getItem("mainloop-theme");
  if (theme && /^[a-z-]+$/.test(theme)) document.documentElement.className = "theme-" + theme;
} catch {}
