// The five themes of the original, remembered in localStorage ("mainloop-theme") and applied as
// an html class (theme-*) over the --term-* colours.

export const THEMES = ["eighties", "dracula", "nord", "gruvbox", "tokyo-night"] as const;
export type Theme = (typeof THEMES)[number];
const KEY = "mainloop-theme";

export function currentTheme(): Theme {
  const saved = readSaved();
  return (THEMES as readonly string[]).includes(saved ?? "") ? (saved as Theme) : "eighties";
}

export function applyTheme(theme: Theme): void {
  document.documentElement.className = `theme-${theme}`;
  try {
    localStorage.setItem(KEY, theme);
  } catch {
    // Private mode: the theme lasts for this visit only.
  }
}

function readSaved(): string | null {
  try {
    return localStorage.getItem(KEY);
  } catch {
    return null;
  }
}
