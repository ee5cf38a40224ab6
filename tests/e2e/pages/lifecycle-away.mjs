// The page the lifecycle page leaves for. With `?back=<ms>` it goes back by itself after that
// long (history.back()), so that no WebDriver command runs while either page navigates.
const back = Number(new URLSearchParams(location.search).get("back"));
if (back > 0) setTimeout(() => history.back(), back);
