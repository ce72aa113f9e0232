// Every string the dashboard shows, in Chinese and English. `t(key, vars)` looks one up in the
// current language; elements with data-i18n="key" (text), data-i18n-aria="key" (aria-label) or
// data-i18n-placeholder="key" are filled by `applyI18n()`.

export const DICT = {
  zh: {
    lang_name: "中文", lang_other: "English", lang_toggle_label: "切换到英文界面",
    title: "丽水森林碳风险", subtitle: "林业局仪表板",
    skip: "跳到主要内容",
    signin_heading: "登录", signin_help: "请输入贵单位的 API 密钥。密钥只保存在本浏览器标签页的会话存储中，关闭标签页即清除。",
    api_key: "API 密钥", sign_in: "登录", sign_out: "退出", signing_in: "正在验证…",
    signin_bad_key: "密钥无效、已过期或已被吊销（HTTP {status}）。",
    signin_role: "此密钥（管理员）无权调用分析接口。请使用林业局、银行或保险机构的密钥。",
    signed_in_as: "已登录（密钥 {key}）",
    tab_portfolio: "资产组合与地图", tab_run: "压力测试", tab_results: "结果", tab_accounts: "五级碳账户", tab_reports: "报告下载",
    tabs_label: "仪表板页面",
    portfolio_heading: "资产组合", choose_portfolio: "选择资产组合", no_portfolios: "（尚无资产组合，请上传）",
    upload_heading: "上传资产组合", upload_file: "文件（CSV、Parquet、xlsx、GeoJSON 或 JSON）", upload_name: "名称",
    upload_button: "上传", uploading: "正在上传…", uploaded: "已上传：{name}（{n} 个小班）",
    upload_errors: "上传被拒绝：{detail}", upload_no_file: "请先选择文件。",
    parcels: "小班数", area_ha: "面积（公顷）", mean_age: "平均林龄（年）", counties: "县（市、区）数",
    loading_parcels: "正在加载小班 {done}/{total}…",
    map_heading: "小班分布图", map_label: "小班分布图：按{mode}着色。方向键平移，+/− 缩放，0 复位。",
    color_by: "着色依据", color_species: "树种", color_risk: "风险（年均预期损失 tCO₂e/公顷）",
    risk_needs_run: "运行压力测试后可按风险着色（按乡镇的年均预期损失/公顷）。",
    zoom_in: "放大", zoom_out: "缩小", zoom_reset: "复位",
    legend: "图例", no_data: "无数据", map_note: "县界为各县小班的凸包近似，非行政边界。",
    run_heading: "运行压力测试", run_mode_stress: "压力情景", run_mode_sim: "气候路径",
    scenario: "情景", climate_pathway: "气候路径", years: "模拟年数", paths: "蒙特卡洛路径数", seed: "随机种子",
    start: "开始运行", cancel: "取消", cancelling: "正在取消…",
    run_using_sim: "压力测试接口尚未提供，本页改用模拟任务接口（/v1/simulations）运行同样的情景路径。",
    status: "状态", progress: "进度", eta: "预计剩余", eta_value: "{s} 秒", eta_unknown: "—",
    st_queued: "排队中", st_running: "运行中", st_succeeded: "已完成", st_failed: "失败", st_cancelled: "已取消",
    job_log: "任务日志", job_failed: "任务失败：{error}", no_run: "尚未运行。请在“压力测试”页开始一次运行。",
    results_heading: "结果", result_id: "结果编号", run_settings: "{paths} 条路径 × {years} 年，种子 {seed}",
    kpi_stock_end: "期末碳储量（tCO₂e，均值）", kpi_loss: "期内灾害损失（tCO₂e，均值）",
    kpi_loss_p99: "期内损失 99% 分位（tCO₂e）", kpi_sink: "期内累计碳汇（tCO₂e，均值）",
    chart_county: "各县期内灾害损失（tCO₂e，均值 ± 2 个蒙特卡洛标准误）",
    chart_exceed: "超越概率曲线：组合期内损失（由分位数绘制）",
    chart_fan: "碳储量扇形图（tCO₂e；中位数与 80%、90% 区间）",
    axis_loss: "损失（tCO₂e）", axis_prob: "超越概率", axis_year: "年份", axis_stock: "碳储量（tCO₂e）",
    county_table: "各县损失表", col_county: "县（市、区）", col_area: "面积（公顷）", col_loss: "期内损失均值（tCO₂e）",
    col_se: "蒙特卡洛标准误", col_loss_share: "占初始储量", col_p95: "95% 分位（tCO₂e）",
    col_loss_per_ha: "年均损失（tCO₂e/公顷）", col_diff: "较基准增加（tCO₂e）",
    accounts_heading: "五级碳账户（省 → 市 → 县 → 乡镇 → 村）", accounts_help: "点击行首按钮或按回车展开/收起。数值为当前储量与首年预期碳汇、灾害损失。",
    accounts_help_stress: "点击行首按钮或按回车展开/收起。数值为情景“{scenario}”在运行期内的蒙特卡洛均值：期初与期末储量、累计碳汇与损失，价值按情景均价计。",
    expand_all: "全部展开", collapse_all: "全部收起", loading_accounts: "正在计算碳账户…",
    col_name: "名称", col_level: "层级", col_parcels: "小班数", col_stock: "碳储量（tCO₂e）",
    col_sink: "预期年碳汇（tCO₂e/年）", col_acc_loss: "预期年损失（tCO₂e/年）",
    expand_row: "展开 {name}", collapse_row: "收起 {name}",
    lv_portfolio: "组合", lv_province: "省", lv_city: "市", lv_county: "县", lv_township: "乡镇", lv_village: "村",
    reports_heading: "报告下载", reports_help: "下载接口提供的当前结果报告。",
    dl_result_json: "结果（JSON）", dl_accounts_json: "五级碳账户（JSON）", dl_summary_json: "逐年汇总（JSON）",
    dl_report: "报告：{name}", downloading: "正在下载…", downloaded: "已下载 {file}",
    error: "出错：{detail}", mean: "均值",
    run_kind: "运行类型", run_kind_stress: "压力测试（情景对比基准）", run_kind_simulation: "模拟（气候路径，含分布）",
    run_note_stress: "压力测试在相同随机数下将所选情景与基准逐路径对比（/v1/stress-tests）。",
    run_note_sim: "模拟任务（/v1/simulations）给出损失与碳储量的分位数，用于超越概率曲线和扇形图。",
    chart_county_stress: "各县期内灾害损失：情景（柱，± 2 个蒙特卡洛标准误）与基准（黑色刻线），tCO₂e",
    chart_value_fan: "碳储量价值扇形图（元；情景中位数与 80%、90% 区间，虚线为基准均值）",
    chart_value_path: "碳储量价值（元）：情景均值 ± 2 个蒙特卡洛标准误（非分布区间），虚线为基准均值",
    axis_value: "价值（元）", legend_baseline: "基准",
    no_percentiles: "此结果不含损失分位数，无法绘制超越概率曲线；请以“模拟”类型运行查看分布。",
    col_base_loss: "基准损失（tCO₂e）", col_scn_loss: "情景损失（tCO₂e）", col_diff_se: "差值标准误",
    col_stock_start: "期初储量（tCO₂e）", col_stock_end: "期末储量（tCO₂e）", col_acc_sink_run: "期内碳汇（tCO₂e）",
    col_acc_loss_run: "期内损失（tCO₂e）", col_loss_value: "损失价值（元）",
    kpi_extra_loss: "较基准增加的损失（tCO₂e）", kpi_extra_loss_se: "增加损失的标准误（tCO₂e，配对）",
    kpi_value_end: "期末碳储量价值（元，均值）", kpi_loss_value: "期内损失价值（元，均值）",
    dl_stress_report: "压力测试报告（HTML）", dl_stress_workbook: "压力测试工作簿（Excel）", dl_stress_accounts: "情景五级碳账户（JSON）",
    species: {
      chinese_fir: "杉木", masson_pine: "马尾松", other_pines: "其他松类", cryptomeria: "柳杉",
      mixed_conifer: "针叶混交林", mixed_conifer_broadleaf: "针阔混交林", evergreen_broadleaf: "常绿阔叶林",
      hard_broadleaf: "硬阔叶林", oaks: "栎类", moso_bamboo: "毛竹",
    },
    places: {},
  },
  en: {
    lang_name: "English", lang_other: "中文", lang_toggle_label: "Switch to the Chinese interface",
    title: "Lishui forest carbon risk", subtitle: "Forestry bureau dashboard",
    skip: "Skip to main content",
    signin_heading: "Sign in", signin_help: "Enter your organisation's API key. It is kept only in this browser tab's session storage and is gone when the tab closes.",
    api_key: "API key", sign_in: "Sign in", sign_out: "Sign out", signing_in: "Checking…",
    signin_bad_key: "The key is unknown, expired or revoked (HTTP {status}).",
    signin_role: "This key (an admin key) may not call the analysis endpoints. Use a bureau, bank or insurer key.",
    signed_in_as: "Signed in (key {key})",
    tab_portfolio: "Portfolio & map", tab_run: "Stress test", tab_results: "Results", tab_accounts: "Five-level accounts", tab_reports: "Reports",
    tabs_label: "Dashboard pages",
    portfolio_heading: "Portfolio", choose_portfolio: "Choose a portfolio", no_portfolios: "(no portfolios yet: upload one)",
    upload_heading: "Upload a portfolio", upload_file: "File (CSV, Parquet, xlsx, GeoJSON or JSON)", upload_name: "Name",
    upload_button: "Upload", uploading: "Uploading…", uploaded: "Uploaded: {name} ({n} parcels)",
    upload_errors: "Upload rejected: {detail}", upload_no_file: "Choose a file first.",
    parcels: "Parcels", area_ha: "Area (ha)", mean_age: "Mean age (years)", counties: "Counties",
    loading_parcels: "Loading parcels {done}/{total}…",
    map_heading: "Parcel map", map_label: "Parcel map coloured by {mode}. Arrow keys pan, + and − zoom, 0 resets.",
    color_by: "Colour by", color_species: "Species", color_risk: "Risk (expected loss tCO₂e per ha per year)",
    risk_needs_run: "Run a stress test to colour by risk (expected annual loss per ha of each township).",
    zoom_in: "Zoom in", zoom_out: "Zoom out", zoom_reset: "Reset",
    legend: "Legend", no_data: "no data", map_note: "County outlines are convex hulls of each county's parcels, not official boundaries.",
    run_heading: "Run a stress test", run_mode_stress: "Stress scenario", run_mode_sim: "Climate pathway",
    scenario: "Scenario", climate_pathway: "Climate pathway", years: "Years", paths: "Monte Carlo paths", seed: "Seed",
    start: "Start", cancel: "Cancel", cancelling: "Cancelling…",
    run_using_sim: "The stress-test endpoint is not available yet; this page runs the same scenario paths through the simulation job endpoint (/v1/simulations).",
    status: "Status", progress: "Progress", eta: "Time left", eta_value: "{s} s", eta_unknown: "—",
    st_queued: "queued", st_running: "running", st_succeeded: "succeeded", st_failed: "failed", st_cancelled: "cancelled",
    job_log: "Job log", job_failed: "The job failed: {error}", no_run: "No run yet. Start one on the Stress test page.",
    results_heading: "Results", result_id: "Result id", run_settings: "{paths} paths × {years} years, seed {seed}",
    kpi_stock_end: "Stock at the end (tCO₂e, mean)", kpi_loss: "Peril loss over the run (tCO₂e, mean)",
    kpi_loss_p99: "Loss over the run, 99th percentile (tCO₂e)", kpi_sink: "Cumulative sink (tCO₂e, mean)",
    chart_county: "Peril loss by county over the run (tCO₂e, mean ± 2 Monte Carlo s.e.)",
    chart_exceed: "Exceedance curve: portfolio loss over the run (from its percentiles)",
    chart_fan: "Carbon stock fan chart (tCO₂e; median with 80 % and 90 % bands)",
    axis_loss: "Loss (tCO₂e)", axis_prob: "Exceedance probability", axis_year: "Year", axis_stock: "Stock (tCO₂e)",
    county_table: "Losses by county", col_county: "County", col_area: "Area (ha)", col_loss: "Mean loss over the run (tCO₂e)",
    col_se: "Monte Carlo s.e.", col_loss_share: "Share of initial stock", col_p95: "95th percentile (tCO₂e)",
    col_loss_per_ha: "Annual loss (tCO₂e/ha)", col_diff: "Extra over baseline (tCO₂e)",
    accounts_heading: "Five-level carbon accounts (province → city → county → township → village)", accounts_help: "Use the button at the start of a row (or Enter) to expand or collapse it. Figures: stock today, expected first-year sink and peril loss.",
    accounts_help_stress: "Use the button at the start of a row (or Enter) to expand or collapse it. Figures: Monte Carlo means of scenario \"{scenario}\" over the run: stock at start and end, sink and loss summed, values at the scenario's mean price.",
    expand_all: "Expand all", collapse_all: "Collapse all", loading_accounts: "Computing the accounts…",
    col_name: "Name", col_level: "Level", col_parcels: "Parcels", col_stock: "Stock (tCO₂e)",
    col_sink: "Expected sink (tCO₂e/yr)", col_acc_loss: "Expected loss (tCO₂e/yr)",
    expand_row: "Expand {name}", collapse_row: "Collapse {name}",
    lv_portfolio: "Portfolio", lv_province: "Province", lv_city: "City", lv_county: "County", lv_township: "Township", lv_village: "Village",
    reports_heading: "Reports", reports_help: "Download the reports the API offers for the current result.",
    dl_result_json: "Result (JSON)", dl_accounts_json: "Five-level accounts (JSON)", dl_summary_json: "Yearly summary (JSON)",
    dl_report: "Report: {name}", downloading: "Downloading…", downloaded: "Downloaded {file}",
    error: "Error: {detail}", mean: "mean",
    run_kind: "Run type", run_kind_stress: "Stress test (scenario vs baseline)", run_kind_simulation: "Simulation (climate pathway, with distributions)",
    run_note_stress: "A stress test runs the chosen scenario against the baseline on the same random numbers, path by path (/v1/stress-tests).",
    run_note_sim: "A simulation job (/v1/simulations) gives percentiles of loss and stock: the exceedance curve and the fan chart.",
    chart_county_stress: "Peril loss by county over the run: scenario (bars, ± 2 Monte Carlo s.e.) and baseline (black ticks), tCO₂e",
    chart_value_fan: "Carbon stock value fan chart (CNY; scenario median with 80 % and 90 % bands, dashed: baseline mean)",
    chart_value_path: "Carbon stock value (CNY): scenario mean ± 2 Monte Carlo s.e. (not a spread of outcomes); dashed: baseline mean",
    axis_value: "Value (CNY)", legend_baseline: "baseline",
    no_percentiles: "This result carries no loss percentiles, so there is no exceedance curve; run a Simulation to see the distribution.",
    col_base_loss: "Baseline loss (tCO₂e)", col_scn_loss: "Scenario loss (tCO₂e)", col_diff_se: "s.e. of the difference",
    col_stock_start: "Stock at start (tCO₂e)", col_stock_end: "Stock at end (tCO₂e)", col_acc_sink_run: "Sink over the run (tCO₂e)",
    col_acc_loss_run: "Loss over the run (tCO₂e)", col_loss_value: "Loss value (CNY)",
    kpi_extra_loss: "Extra loss over the baseline (tCO₂e)", kpi_extra_loss_se: "s.e. of the extra loss (tCO₂e, paired)",
    kpi_value_end: "Stock value at the end (CNY, mean)", kpi_loss_value: "Loss value over the run (CNY, mean)",
    dl_stress_report: "Stress-test report (HTML)", dl_stress_workbook: "Stress-test workbook (Excel)", dl_stress_accounts: "Scenario five-level accounts (JSON)",
    species: {
      chinese_fir: "Chinese fir", masson_pine: "Masson pine", other_pines: "Other pines", cryptomeria: "Cryptomeria",
      mixed_conifer: "Mixed conifer", mixed_conifer_broadleaf: "Mixed conifer-broadleaf", evergreen_broadleaf: "Evergreen broadleaf",
      hard_broadleaf: "Hard broadleaf", oaks: "Oaks", moso_bamboo: "Moso bamboo",
    },
    // Lishui's nine counties; other place names are shown as they are in the data
    places: {
      "莲都区": "Liandu", "龙泉市": "Longquan", "青田县": "Qingtian", "云和县": "Yunhe", "庆元县": "Qingyuan",
      "缙云县": "Jinyun", "遂昌县": "Suichang", "松阳县": "Songyang", "景宁畲族自治县": "Jingning",
      "浙江省": "Zhejiang", "丽水市": "Lishui",
    },
  },
};

const STORE = "cre.lang";
let lang = (() => {
  try { return sessionStorage.getItem(STORE) || localStorage.getItem(STORE) || "zh"; } catch { return "zh"; }
})();
if (!DICT[lang]) lang = "zh";

export function getLang() { return lang; }

export function setLang(l) {
  if (!DICT[l]) throw new Error(`unknown language ${l}`);
  lang = l;
  try { localStorage.setItem(STORE, l); } catch { /* private mode */ }
  applyI18n();
}

export function t(key, vars = {}) {
  const s = DICT[lang][key] ?? DICT.en[key] ?? key;
  return String(s).replace(/\{(\w+)\}/g, (_, k) => (k in vars ? String(vars[k]) : `{${k}}`));
}

export function speciesName(code) { return DICT[lang].species[code] ?? code; }

/** A place name in the current language: Chinese as in the data, in English "Longquan (龙泉市)". */
export function placeName(name) {
  if (!name) return "";
  const en = DICT[lang].places[name];
  return en ? `${en} (${name})` : name;
}

export function applyI18n(root = document) {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  document.title = `${t("title")} · ${t("subtitle")}`;
  root.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
  root.querySelectorAll("[data-i18n-aria]").forEach((el) => { el.setAttribute("aria-label", t(el.dataset.i18nAria)); });
  root.querySelectorAll("[data-i18n-placeholder]").forEach((el) => { el.setAttribute("placeholder", t(el.dataset.i18nPlaceholder)); });
}

/** Numbers in the current language's style. */
export function fmt(x, digits = 0) {
  if (x === null || x === undefined || Number.isNaN(x)) return "—";
  return new Intl.NumberFormat(lang === "zh" ? "zh-CN" : "en-GB", {
    maximumFractionDigits: digits, minimumFractionDigits: digits,
  }).format(x);
}

export function fmtPct(x, digits = 1) {
  if (x === null || x === undefined || !Number.isFinite(x)) return "—";
  return `${fmt(100 * x, digits)} %`;
}
