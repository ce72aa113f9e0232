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
    results_heading: "结果", result_id: "结果编号", run_settings: "{paths} 条路径 × {years} 年，种子 {seed} · 模型 {model}，参数 sha256 {sha}", ci_unbounded: "无界",
    kpi_stock_end: "期末碳储量（tCO₂e，均值）", kpi_loss: "期内灾害损失（tCO₂e，均值）",
    kpi_loss_p99: "期内损失 99% 分位（tCO₂e）", kpi_sink: "期内累计碳汇（tCO₂e，均值）",
    chart_county: "各县期内灾害损失（tCO₂e，均值 ± 2 个蒙特卡洛标准误）",
    chart_exceed: "超越概率曲线：组合期内损失（由分位数绘制）",
    chart_fan: "碳储量扇形图（tCO₂e；中位数与 80%、90% 区间）",
    axis_loss: "损失（tCO₂e）", axis_prob: "超越概率", axis_year: "年份", axis_stock: "碳储量（tCO₂e）",
    county_table: "各县损失表", col_county: "县（市、区）", col_area: "面积（公顷）", col_loss: "期内损失均值（tCO₂e）",
    col_se: "蒙特卡洛标准误（tCO₂e）", col_loss_share: "占初始储量", col_p95: "95% 分位（tCO₂e）",
    col_loss_per_ha: "年均损失（tCO₂e/公顷）", col_diff: "较基准增加（tCO₂e）",
    accounts_heading: "五级碳账户（省 → 市 → 县 → 乡镇 → 村）", accounts_help: "点击行首按钮或按回车展开/收起。数值为当前储量与首年预期碳汇、灾害损失和轮伐采伐（预期碳汇 = 生长 − 枯损 − 灾害损失 − 采伐；均为森林储量变化，不是可签发的碳汇）。",
    accounts_help_stress: "点击行首按钮或按回车展开/收起。数值为情景“{scenario}”在运行期内的蒙特卡洛均值：期初与期末储量、累计碳汇与损失，价值按情景均价计。",
    expand_all: "全部展开", collapse_all: "全部收起", loading_accounts: "正在计算碳账户…",
    col_name: "名称", col_level: "层级", col_parcels: "小班数", col_stock: "碳储量（tCO₂e）",
    col_sink: "预期年碳汇（tCO₂e/年）", col_acc_loss: "预期年损失（tCO₂e/年）",
    expand_row: "展开 {name}", collapse_row: "收起 {name}",
    acc_source: "账户来源", acc_source_run: "最近一次运行的碳账户（{id}）", acc_source_portfolio: "资产组合：当前储量与首年预期碳汇、损失",
    acc_compute: "计算碳账户",
    acc_form_help: "路径越多，蒙特卡洛标准误越小。超出单次请求可即时计算的规模时，页面自动改为后台任务计算（显示进度，可取消），结果另存为碳账户记录。",
    acc_sync_refused: "{parcels} 个小班 × {paths} 条路径 = {cells}，超过单次请求可即时计算的上限 {limit}（此组合即时至多 {max} 条路径）。已改为后台任务计算，完成后显示并保存。",
    acc_sync_refused_none: "{parcels} 个小班 × {paths} 条路径 = {cells}，超过单次请求可即时计算的上限 {limit}（此组合过大，任何路径数都不能即时计算）。已改为后台任务计算，完成后显示并保存。",
    acc_role_limit: "{parcels} 个小班 × {paths} 条路径 = {cells}，超过您的密钥角色可运行的上限 {limit}。请减少路径数。",
    acc_job_cancelled: "碳账户任务已取消，未显示结果。", loading_accounts_rows: "正在读取碳账户…",
    acc_meta: "{paths} 条路径，种子 {seed} · 模型 {model}，参数 sha256 {sha}", acc_meta_id: "碳账户记录 {id}",
    lv_portfolio: "组合", lv_province: "省", lv_city: "市", lv_county: "县", lv_township: "乡镇", lv_village: "村",
    reports_heading: "报告下载", reports_help: "下载接口提供的当前结果报告。",
    dl_result_json: "结果（JSON）", dl_accounts_json: "五级碳账户（JSON）", dl_summary_json: "逐年汇总（JSON）",
    dl_report: "报告：{name}", downloading: "正在下载…", downloaded: "已下载 {file}",
    error: "出错：{detail}", mean: "均值",
    run_kind: "运行类型", run_kind_stress: "压力测试（情景对比基准）", run_kind_simulation: "模拟（气候路径，含分布）",
    run_note_stress: "压力测试在相同随机数下将所选情景与基准逐路径对比（/v1/stress-tests）。",
    run_note_sim: "模拟任务（/v1/simulations）给出损失与碳储量的分位数，用于超越概率曲线和扇形图。",
    chart_county_stress: "各县期内灾害损失：情景（柱，± 2 个蒙特卡洛标准误）与基准（黑色刻线），tCO₂e",
    chart_value_fan: "碳储量价值扇形图（元；情景中位数与 90% 区间（P05–P95），虚线为基准均值）",
    chart_value_path: "碳储量价值（元）：情景均值 ± 2 个蒙特卡洛标准误（非分布区间），虚线为基准均值",
    axis_value: "价值（元）", legend_baseline: "基准",
    no_percentiles: "此结果不含损失分位数，无法绘制超越概率曲线；请以“模拟”类型运行查看分布。",
    col_base_loss: "基准损失（tCO₂e）", col_scn_loss: "情景损失（tCO₂e）", col_diff_se: "差值标准误（tCO₂e）", col_base_se: "基准损失标准误（tCO₂e）",
    col_stock_start: "期初储量（tCO₂e）", col_stock_end: "期末储量（tCO₂e）", col_acc_sink_run: "期内碳汇（tCO₂e）",
    col_acc_loss_run: "期内损失（tCO₂e）", col_loss_value: "损失价值（元）", col_sink_se: "碳汇标准误（tCO₂e）", col_loss_se: "损失标准误（tCO₂e）",
    col_sink_psd: "碳汇参数标准差 [95% 区间]（tCO₂e）", col_loss_psd: "损失参数标准差 [95% 区间]（tCO₂e）",
    kpi_extra_loss: "较基准增加的损失（tCO₂e，± 配对标准误）",
    kpi_value_end: "期末碳储量价值（元，均值）", kpi_loss_value: "期内损失价值（元，均值）",
    dl_stress_report: "压力测试报告（HTML）", dl_stress_workbook: "压力测试工作簿（Excel）", dl_stress_accounts: "情景五级碳账户（JSON）",
    run_sim_role: "压力测试仅供林业局密钥使用；本页以模拟任务（/v1/simulations）按气候路径运行。",
    tab_loan: "贷款估值", tab_quote: "保险报价", optional: "可选",
    fin_portfolio: "资产组合", fin_portfolio_help: "在“资产组合与地图”页更换。", quote_portfolio_help: "报价针对整个组合（在“资产组合与地图”页更换）。",
    fin_computing: "正在计算…", fin_job: "任务 {id}：{status}（{pct} %）", fin_done: "已完成。", yes: "是", no: "否",
    loan_heading: "碳汇质押贷款估值", loan_pledge: "质押小班（按项目，或整个组合）",
    loan_whole_portfolio: "整个组合（{n} 个小班，{ha} 公顷）", loan_project_option: "项目 {id}（{n} 个小班，{ha} 公顷）",
    loan_whole: "整个组合",
    loan_amount: "贷款金额（元）", loan_term: "期限（年）", loan_rate: "年利率（%）", loan_pd: "借款人违约概率 PD（%，可选）",
    loan_mortgage: "林权抵押价值（元，可选）", loan_attribution: "计算价值驱动因素（约多 9 次运行）", loan_submit: "估值",
    loan_results_heading: "质押品估值结果", dl_memo: "下载贷审会备忘录（HTML）",
    loan_settings: "质押：{pledge}（{parcels} 个小班，{ha} 公顷）· {paths} 条路径，种子 {seed}",
    kpi_value_today: "质押碳汇当前价值（元）", pm_se: "± {se}（蒙特卡洛标准误）", kpi_psd: "参数标准差 {sd}", kpi_value_se: "当前价值的蒙特卡洛标准误（元）",
    psd_not_resolved: "未能分辨", psd_not_resolved_note: "未能分辨：参数标准差的方差分量估计小于零，已截断为 0（0：在此路径数下，各参数组之间的差异低于蒙特卡洛噪声；增加路径数或可分辨）。",
    kpi_value_psd: "当前价值的参数标准差（元）", kpi_max_loan_ci95_low: "最大安全贷款额 95% 置信区间下限（元）",
    kpi_max_loan_ci95_high: "最大安全贷款额 95% 置信区间上限（元）",
    kpi_ci95_low: "当前价值 95% 置信区间下限（元）", kpi_ci95_high: "当前价值 95% 置信区间上限（元）",
    kpi_max_loan: "最大安全贷款额（元）", at_shortfall: "目标不足概率 {p}", kpi_ltv0: "发放时贷款价值比（LTV）",
    kpi_p_below_any: "期内任一年价值低于贷款余额的概率", kpi_stock_today: "质押小班当前碳储量（tCO₂e）", kpi_amount: "贷款金额（元）",
    chart_loan_fan: "质押品价值扇形图（元；中位数与 90% 区间，虚线为贷款余额）", chart_loan_below: "各年末价值低于贷款余额的概率（%，± 2 个蒙特卡洛标准误）",
    axis_loan_year: "贷款年度", legend_balance: "贷款余额", year_n: "第 {n} 年", axis_pct: "概率（%）",
    loan_by_year: "逐年：贷款余额、质押品价值分位数、LTV 与补仓", col_year: "年度", col_balance: "贷款余额（元）",
    col_value_p05: "价值 5% 分位（元）[95% 区间]", col_value_p50: "价值中位数（元）[95% 区间]", col_value_p95: "价值 95% 分位（元）[95% 区间]",
    col_ltv_p50: "LTV 中位数", col_ltv_p95: "LTV 95% 分位 [95% 区间]", col_p_below: "价值低于余额概率", col_p_call: "补仓概率",
    col_top_up: "预期补仓额（元）",
    loan_security: "担保结构", sec_carbon: "碳汇质押价值（元）", sec_mortgage: "林权抵押（元）", sec_guarantee: "保证（元）",
    sec_carbon_share: "碳汇占担保比例", sec_cover: "碳汇对敞口覆盖率", sec_unsecured: "无担保部分（元）",
    sec_enhancement_only: "碳汇仅为增信手段（覆盖率低于 20%）",
    loan_credit: "信用指标", loan_credit_none: "填写借款人违约概率 PD 后显示预期损失、违约损失率与风险加权资产。",
    credit_note: "碳汇不是巴塞尔框架认可的金融质押品；初级内评法至多将其视为“其他实物质押品”（LGD 25%，折扣 40%），且需市场流动、价格公开。无担保数值为保守处理。",
    cr_pd: "违约概率 PD", cr_ead: "违约风险暴露 EAD（元）", cr_maturity: "有效期限 M（年）",
    cr_lgd_secured: "LGD（碳汇作其他实物质押）", cr_lgd_unsecured: "LGD（无担保）", cr_lgd_sim: "模拟 LGD（强制处置）",
    cr_el: "预期损失（元）", cr_el_unsecured: "预期损失，无担保（元）", cr_k: "内评法资本要求 K",
    cr_rwa: "风险加权资产（元）", cr_rwa_unsecured: "风险加权资产，无担保（元）",
    loan_drivers: "价值驱动因素（逐一关闭，公共随机数）", col_driver: "驱动因素", col_value: "价值（元）",
    col_value_effect: "价值变化 ± 标准误（元）", col_p_below_any: "期内低于余额概率", col_shortfall_effect: "概率变化 ± 标准误",
    col_exp_shortfall: "预期不足额 ± 标准误（元）",
    loan_drivers_note: "预期不足额：在贷款期内每年末强制处置质押品后银行仍未收回的金额（当年未偿余额减去回收额：扣除流动性折扣与处置成本、按处置期贴现后的质押品价值，加林权抵押与保证），按贷款年度加总、按路径取平均。它假定每年都强制处置、不计违约概率，不是预期信用损失（PD × LGD × EAD），也不是质押品的预期亏损（ES）。“价值变化”与“概率变化”的标准误为关闭该因素与完整模型的配对差值（公共随机数）的蒙特卡洛标准误；接口只给出各行价值与概率之差的误差，故关闭某因素的一行，其价值与概率的误差见同一行的变化列（完整模型一行列出其自身的标准误）。恰为 0 或 1 的概率给出三法则 95% 区间。",
    loan_sens: "价格敏感性", col_case: "情形", col_change: "价值变化 ± 标准误（元）",
    quote_heading: "森林碳汇保险报价", quote_kind: "保障类型", cover_stock_loss: "碳储量损失险", cover_sink_index: "碳汇指数险",
    quote_price: "约定价格（元/tCO₂e）", quote_perils: "承保灾害", peril_fire: "火灾", peril_pine_wilt: "松材线虫病",
    peril_typhoon: "台风", peril_ice_storm: "冰冻雪灾", peril_drought: "干旱",
    quote_deductible: "年免赔额（元）", quote_trigger: "触发比例（实测碳汇/预期碳汇）", quote_limit: "赔偿限额（元）",
    quote_limit_default: "默认：保险金额", quote_submit: "报价",
    quote_results_heading: "报价结果", dl_slip: "下载报价单（HTML）",
    quote_settings: "{kind} · {ha} 公顷，保险金额 {si} 元 · {paths} 条路径，种子 {seed}",
    quote_no_payout: "无预期损失：该保障在所有模拟年份都不赔付，纯保费及其风险附加均为 0。",
    kpi_pure: "纯保费（元）", kpi_pure_se: "纯保费的蒙特卡洛标准误（元）", kpi_gross: "毛保费（元）", kpi_rate: "费率（占保险金额）",
    kpi_per_mu: "每亩保费（元）", kpi_per_ha: "每公顷保费（元）", kpi_per_tco2e: "每吨 CO₂e 保费（元）",
    kpi_loss_ratio: "预期赔付率", kpi_sum_insured: "保险金额（元）", kpi_p_payout: "年内发生赔付的概率",
    quote_basis_heading: "基差风险与保障缺口", quote_basis_help: "基差风险：按实测指数的赔付与按真实碳汇（同一触发点、限额和赔付比例）的“完美指数赔付”之差，仅来自指数误差；保障缺口：即使指数完美，合同设计（触发点、限额、赔付比例）也不赔的损失。",
    kpi_basis_rmse: "赔付与完美指数赔付之差的均方根（元/年）", kpi_basis_miss: "完美指数赔付而实测指数不赔的概率",
    kpi_basis_extra: "实测指数赔付而完美指数不赔的概率", kpi_gap_mean: "保障缺口均值（元/年）", kpi_gap_share: "保障缺口占真实损失的比例",
    chart_quote_ep: "超越概率曲线：年度累计赔付（AEP）", axis_payout: "赔付（元）",
    quote_pml: "可能最大损失 PML（OEP：单次事件，AEP：年度累计）", col_basis: "口径", col_return_period: "重现期（年）",
    col_pml: "PML（元）", col_ci_low: "95% 区间下限（元）", col_ci_high: "95% 区间上限（元）",
    quote_subsidy: "保费补贴分担（方案：{scheme}）", col_payer: "承担方", col_share: "比例", col_amount: "金额（元）",
    payer_central: "中央财政", payer_provincial: "省级财政", payer_city: "市级财政", payer_county: "县级财政", payer_insured: "投保人",
    upload_problems: "文件有 {n} 个问题（以下列出前 {shown} 个）：", upload_problem_row: "第 {row} 行，列 {column}", upload_problem_col: "列 {column}",
    upload_problem_field: "字段 {field}",
    field_invalid: "{field}：取值无效", request_rejected: "请求被拒绝（HTTP {status}）。",
    run_invalid: "运行请求被拒绝：{fields}", run_resumed: "已恢复正在运行的任务 {id}（页面重新加载前启动）。",
    case_price: "价格 {pct}", case_vol: "波动率 ×{f}", driver_full: "完整模型", driver_without: "去掉{what}",
    driver_price_volatility_and_jumps: "价格波动与跳跃", driver_issuance_risk: "签发风险", driver_growth_uncertainty: "生长不确定性",
    driver_peril_parameter_uncertainty: "灾害参数不确定性", driver_assigned_insurance: "所附保险",
    scheme_none: "无补贴", scheme_custom: "自定义", scheme_public_welfare_forest: "公益林方案", scheme_commercial_forest: "商品林方案",
    scheme_hebei_chestnut_2015: "河北板栗 2015 方案",
    list_sep: "、", col_balance_mean: "平均贷款余额（元，已满足的补仓计入）",
    psd_ci: "{sd} [{lo}–{hi}]", kpi_psd_ci: "参数标准差 {sd}（95% 区间 {lo}–{hi}）", psd_ci_sub: "95% 区间 {lo}–{hi}",
    psd_ci_note: "方括号内为参数标准差的 95% 置信区间（方差分量的修正大样本区间；路径越多越窄）。“未能分辨”时区间从 0 到上界：这是数据能给出的全部信息。",
    col_harvest: "预期年采伐（tCO₂e/年）", col_harvest_se: "采伐标准误（tCO₂e）", col_harvest_psd: "采伐参数标准差 [95% 区间]（tCO₂e）",
    nr_flag: "未能分辨", nr_sub: "未能分辨：约需 {n} 条路径", nr_sub_sets: "未能分辨：参数组少于 5 组",
    nr_note: "在 {paths} 条路径下未能分辨：{figures}。分位数以外的路径太少，无法估计价值回归自身的误差，这些数值的区间仅来自顺序统计量，偏窄。约 {n} 条路径可分辨（贷款页“蒙特卡洛路径数”）。",
    nr_note_sets: "未能分辨：{figures}。本次运行的参数组少于 5 组，无法估计价值回归自身的误差，这些数值的区间仅来自顺序统计量，偏窄。请增加路径数。",
    nr_fig_max_loan_cny: "最大安全贷款额", nr_fig_max_loan_target: "目标不足概率 {p} 时的最大安全贷款额",
    nr_fig_collateral_var95_cny: "VaR 95%", nr_fig_collateral_es95_cny: "ES 95%",
    nr_fig_collateral_var99_cny: "VaR 99%", nr_fig_collateral_es99_cny: "ES 99%",
    zero_one: "估计值恰为 {p}：95% 区间 [{lo}, {hi}]（三法则）", zero_one_cell: "{p}（95% 区间 {lo}–{hi}）",
    zero_one_note: "概率估计恰为 0 或 1 时，其标准误为 0、不说明任何问题：改示三法则 95% 区间 [0, 3/n] 或 [1 − 3/n, 1]（n 为参数组数）。",
    kpi_p_any_call: "期内发生补仓的概率", kpi_p_short_practice: "按惯例贷款额（质押率 × 当前价值）的不足概率",
    loan_risk: "质押品尾部风险（元，今日货币）",
    rk_var95: "VaR 95%（元，今日货币）", rk_es95: "ES 95%（元，今日货币）", rk_var99: "VaR 99%（元，今日货币）", rk_es99: "ES 99%（元，今日货币）",
    val_ci: "{v}（95% 区间 {lo}–{hi}）", val_se: "{v} ± {se}（蒙特卡洛标准误）", val_nr: "{text}（未能分辨）",
    risk_basis: "VaR：当前价值减去期末价值（按贴现率折现到今天）的 5%（1%）分位数；ES：当前价值减去该分位数以下期末价值（折现后）的均值。两者均以今日货币计，与当前价值可比。",
    kpi_eff_limit: "有效赔偿限额（元；触发碳汇的价值 = 价格 × 触发比例 × 预期碳汇）", kpi_expected_sink: "预期碳汇（tCO₂e/年，模型均值）",
    kpi_trigger_t: "触发点（tCO₂e/年）", kpi_limit: "赔偿限额（元）", from_run: "由本次模拟估计 ± {se}（蒙特卡洛标准误）",
    subsidy_note_no_central: "默认不计保费补贴：中央财政森林保险保费补贴（商品林 30%、公益林 50%）适用于以再植成本为保险金额的政策性森林保险；此处报价的碳汇类保障（按碳价计的储量损失、碳汇指数、价格保底）不在其内，已公开的碳汇保险均由投保人（多为区县政府和国有林场）以地方财政支付。如需分担保费，请指定补贴方案。",
    subsidy_note_central_scheme: "该方案的中央财政份额假定此保障可享受中央财政森林保险保费补贴；该补贴针对以再植成本为保险金额的政策性森林保险，目前未见碳汇保险获得该补贴的先例。",
    fin_cancelled: "任务已取消，未计算新结果（上一次结果仍显示在下方）。", fields_marked: "请按标出字段旁的说明修改。",
    loan_over_limit: "申请的贷款金额 {amount} 元超过最大安全贷款额 {max} 元（目标不足概率 {p}；95% 区间 {lo}–{hi}）。",
    loan_over_limit_nr: "该最大安全贷款额在此路径数下未能分辨（见下方说明）。",
    loan_over_pledge: "申请的贷款金额超过惯例贷款额 {practice} 元（质押率 {rate} × 当前价值）：发放时 LTV {ltv} 高于质押率。",
    kpi_practice_loan: "惯例贷款额（元；质押率 × 当前价值）", practice_sub: "± {se}（蒙特卡洛标准误）· 质押率 {rate}",
    loan_targets: "各目标不足概率下的最大安全贷款额（元，95% 区间）", target_p: "目标不足概率 {p}",
    ci_cell: "{v} [{lo}–{hi}]", kpi_pure_psd: "纯保费的参数标准差（元）",
    pml_OEP: "OEP（单次事件）", pml_AEP: "AEP（年度累计）", col_stock_end_se: "期末储量标准误（tCO₂e）",
    col_loss_value_se: "损失价值标准误上界（元）", legend_p_payout: "年内发生赔付的概率",
    desc_sep: "；", desc_bar: "{label}：{v}", desc_err: " ± {e}", desc_base: "，{name} {b}", desc_errors: "误差线：{what}",
    desc_exceed_loss: "P(损失 > {x}) = {p}", desc_exceed_payout: "P(赔付 > {x}) = {p}",
    desc_fan: "{year}：{p50}（{lo}–{hi}）", desc_fan_pct: "各年：中位数（5%–95% 分位）", desc_fan_se: "各年：均值（± 2 个蒙特卡洛标准误）",
    err_2se: "± 2 个蒙特卡洛标准误",
    scenarios: {
      baseline: "基准（当前模型，不作改变）",
      carbon_price_crash: "碳价暴跌：第 1 年下跌 50%，波动率 45%",
      climate_trend_fire: "气候趋势火险：火灾危险度至 2050 年 ×1.3、至 2100 年 ×4（升温路径）",
      ice_storm_2008: "第 2 年发生 2008 年型冰冻雪灾（龙泉、庆元、遂昌、景宁）",
      perfect_storm: "完美风暴：极端火险年、冰冻雪灾、松材线虫病疫情、超强台风、碳价暴跌、气候升温",
      pine_wilt_epidemic: "第 1 年起松材线虫病疫情（龙泉、庆元；小班感染率 ×2）",
      severe_fire_weather: "第 1 年极端火险天气（天气因子 3，全市），第 1 年干旱",
      super_typhoon: "第 1 年超强台风经过青田（强度 2.5），风暴强度 ×1.3",
      transition_price_surge: "转型碳价飙升（NGFS 延迟转型路径）",
    },
    pathways: {
      current: "当前气候（各乘数均为 1.0）",
      warming: "高升温路径：火灾危险度至 2050 年 ×1.3、至 2100 年 ×3",
    },
    species: {
      chinese_fir: "杉木", masson_pine: "马尾松", other_pines: "其他松类", cryptomeria: "柳杉",
      mixed_conifer: "针叶混交林", mixed_conifer_broadleaf: "针阔混交林", evergreen_broadleaf: "常绿阔叶林",
      hard_broadleaf: "硬阔叶林", oaks: "栎类", moso_bamboo: "毛竹", slash_pine: "湿地松", schima: "木荷", liquidambar: "枫香",
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
    results_heading: "Results", result_id: "Result id", run_settings: "{paths} paths × {years} years, seed {seed} · model {model}, parameters sha256 {sha}", ci_unbounded: "unbounded",
    kpi_stock_end: "Stock at the end (tCO₂e, mean)", kpi_loss: "Peril loss over the run (tCO₂e, mean)",
    kpi_loss_p99: "Loss over the run, 99th percentile (tCO₂e)", kpi_sink: "Cumulative sink (tCO₂e, mean)",
    chart_county: "Peril loss by county over the run (tCO₂e, mean ± 2 Monte Carlo s.e.)",
    chart_exceed: "Exceedance curve: portfolio loss over the run (from its percentiles)",
    chart_fan: "Carbon stock fan chart (tCO₂e; median with 80 % and 90 % bands)",
    axis_loss: "Loss (tCO₂e)", axis_prob: "Exceedance probability", axis_year: "Year", axis_stock: "Stock (tCO₂e)",
    county_table: "Losses by county", col_county: "County", col_area: "Area (ha)", col_loss: "Mean loss over the run (tCO₂e)",
    col_se: "Monte Carlo s.e. (tCO₂e)", col_loss_share: "Share of initial stock", col_p95: "95th percentile (tCO₂e)",
    col_loss_per_ha: "Annual loss (tCO₂e/ha)", col_diff: "Extra over baseline (tCO₂e)",
    accounts_heading: "Five-level carbon accounts (province → city → county → township → village)", accounts_help: "Use the button at the start of a row (or Enter) to expand or collapse it. Figures: stock today, expected first-year sink, peril loss and rotation harvest (expected sink = growth − mortality − loss − harvest; stock changes of the forest, not creditable sinks).",
    accounts_help_stress: "Use the button at the start of a row (or Enter) to expand or collapse it. Figures: Monte Carlo means of scenario \"{scenario}\" over the run: stock at start and end, sink and loss summed, values at the scenario's mean price.",
    expand_all: "Expand all", collapse_all: "Collapse all", loading_accounts: "Computing the accounts…",
    col_name: "Name", col_level: "Level", col_parcels: "Parcels", col_stock: "Stock (tCO₂e)",
    col_sink: "Expected sink (tCO₂e/yr)", col_acc_loss: "Expected loss (tCO₂e/yr)",
    expand_row: "Expand {name}", collapse_row: "Collapse {name}",
    acc_source: "Accounts of", acc_source_run: "the last run ({id})", acc_source_portfolio: "the portfolio: stock today, expected first-year sink and loss",
    acc_compute: "Compute the accounts",
    acc_form_help: "More paths narrow the Monte Carlo errors. Beyond what one request computes at once, the page runs the accounts as a job (with its progress and a cancel button) and keeps them as a stored accounts run.",
    acc_sync_refused: "{parcels} parcels × {paths} paths = {cells} is more than the {limit} computed within one request (at most {max} paths for this portfolio at once). Computing them as a job instead; they are shown and kept when it ends.",
    acc_sync_refused_none: "{parcels} parcels × {paths} paths = {cells} is more than the {limit} computed within one request (this portfolio is too large for any number of paths at once). Computing them as a job instead; they are shown and kept when it ends.",
    acc_role_limit: "{parcels} parcels × {paths} paths = {cells} is more than your key's role may run ({limit}). Ask for fewer paths.",
    acc_job_cancelled: "The accounts job was cancelled: no accounts shown.", loading_accounts_rows: "Reading the accounts…",
    acc_meta: "{paths} paths, seed {seed} · model {model}, parameters sha256 {sha}", acc_meta_id: "Accounts run {id}",
    lv_portfolio: "Portfolio", lv_province: "Province", lv_city: "City", lv_county: "County", lv_township: "Township", lv_village: "Village",
    reports_heading: "Reports", reports_help: "Download the reports the API offers for the current result.",
    dl_result_json: "Result (JSON)", dl_accounts_json: "Five-level accounts (JSON)", dl_summary_json: "Yearly summary (JSON)",
    dl_report: "Report: {name}", downloading: "Downloading…", downloaded: "Downloaded {file}",
    error: "Error: {detail}", mean: "mean",
    run_kind: "Run type", run_kind_stress: "Stress test (scenario vs baseline)", run_kind_simulation: "Simulation (climate pathway, with distributions)",
    run_note_stress: "A stress test runs the chosen scenario against the baseline on the same random numbers, path by path (/v1/stress-tests).",
    run_note_sim: "A simulation job (/v1/simulations) gives percentiles of loss and stock: the exceedance curve and the fan chart.",
    chart_county_stress: "Peril loss by county over the run: scenario (bars, ± 2 Monte Carlo s.e.) and baseline (black ticks), tCO₂e",
    chart_value_fan: "Carbon stock value fan chart (CNY; scenario median with its 90 % band, P05–P95; dashed: baseline mean)",
    chart_value_path: "Carbon stock value (CNY): scenario mean ± 2 Monte Carlo s.e. (not a spread of outcomes); dashed: baseline mean",
    axis_value: "Value (CNY)", legend_baseline: "baseline",
    no_percentiles: "This result carries no loss percentiles, so there is no exceedance curve; run a Simulation to see the distribution.",
    col_base_loss: "Baseline loss (tCO₂e)", col_scn_loss: "Scenario loss (tCO₂e)", col_diff_se: "s.e. of the difference (tCO₂e)", col_base_se: "s.e. of the baseline loss (tCO₂e)",
    col_stock_start: "Stock at start (tCO₂e)", col_stock_end: "Stock at end (tCO₂e)", col_acc_sink_run: "Sink over the run (tCO₂e)",
    col_acc_loss_run: "Loss over the run (tCO₂e)", col_loss_value: "Loss value (CNY)", col_sink_se: "s.e. of the sink (tCO₂e)", col_loss_se: "s.e. of the loss (tCO₂e)",
    col_sink_psd: "Parameter sd of the sink [95 % CI] (tCO₂e)", col_loss_psd: "Parameter sd of the loss [95 % CI] (tCO₂e)",
    kpi_extra_loss: "Extra loss over the baseline (tCO₂e, ± paired s.e.)",
    kpi_value_end: "Stock value at the end (CNY, mean)", kpi_loss_value: "Loss value over the run (CNY, mean)",
    dl_stress_report: "Stress-test report (HTML)", dl_stress_workbook: "Stress-test workbook (Excel)", dl_stress_accounts: "Scenario five-level accounts (JSON)",
    run_sim_role: "Stress tests are for bureau keys; this page runs simulations on a climate pathway (/v1/simulations) instead.",
    tab_loan: "Loan valuation", tab_quote: "Insurance quote", optional: "optional",
    fin_portfolio: "Portfolio", fin_portfolio_help: "change it on the Portfolio & map page.", quote_portfolio_help: "the quote covers the whole portfolio (change it on the Portfolio & map page).",
    fin_computing: "Computing…", fin_job: "Job {id}: {status} ({pct} %)", fin_done: "Done.", yes: "yes", no: "no",
    loan_heading: "Value a carbon-pledge loan", loan_pledge: "Pledged parcels (a project, or the whole portfolio)",
    loan_whole_portfolio: "Whole portfolio ({n} parcels, {ha} ha)", loan_project_option: "Project {id} ({n} parcels, {ha} ha)",
    loan_whole: "whole portfolio",
    loan_amount: "Loan amount (CNY)", loan_term: "Term (years)", loan_rate: "Interest rate (% a year)", loan_pd: "Borrower PD (%, optional)",
    loan_mortgage: "Forest-right mortgage (CNY, optional)", loan_attribution: "Value drivers (about 9 more runs)", loan_submit: "Value the loan",
    loan_results_heading: "Collateral valuation", dl_memo: "Download the collateral memo (HTML)",
    loan_settings: "Pledge: {pledge} ({parcels} parcels, {ha} ha) · {paths} paths, seed {seed}",
    kpi_value_today: "Value of the pledged carbon today (CNY)", pm_se: "± {se} (Monte Carlo s.e.)", kpi_psd: "parameter sd {sd}", kpi_value_se: "Monte Carlo s.e. of the value today (CNY)",
    psd_not_resolved: "not resolved", psd_not_resolved_note: "not resolved: a parameter sd whose variance-components estimate fell below zero and was clipped at 0 (0: the spread across parameter sets is below the Monte Carlo noise at these paths; more paths may resolve it).",
    kpi_value_psd: "Parameter sd of the value today (CNY)", kpi_max_loan_ci95_low: "Largest safe loan, 95 % CI low (CNY)",
    kpi_max_loan_ci95_high: "Largest safe loan, 95 % CI high (CNY)",
    kpi_ci95_low: "Value today, 95 % CI low (CNY)", kpi_ci95_high: "Value today, 95 % CI high (CNY)",
    kpi_max_loan: "Largest safe loan (CNY)", at_shortfall: "at a target shortfall probability of {p}", kpi_ltv0: "LTV at origination",
    kpi_p_below_any: "P(value below the balance in any year of the term)", kpi_stock_today: "Stock of the pledged parcels today (tCO₂e)", kpi_amount: "Loan amount (CNY)",
    chart_loan_fan: "Collateral value fan chart (CNY; median and 90 % band; dashed: loan balance)", chart_loan_below: "P(value at the year's end below the balance), % (± 2 Monte Carlo s.e.)",
    axis_loan_year: "Loan year", legend_balance: "loan balance", year_n: "Year {n}", axis_pct: "Probability (%)",
    loan_by_year: "By year: balance, collateral value percentiles, LTV and top-up calls", col_year: "Year", col_balance: "Balance (CNY)",
    col_value_p05: "Value p5 (CNY) [95 % CI]", col_value_p50: "Value median (CNY) [95 % CI]", col_value_p95: "Value p95 (CNY) [95 % CI]",
    col_ltv_p50: "LTV median", col_ltv_p95: "LTV p95 [95 % CI]", col_p_below: "P(value < balance)", col_p_call: "P(top-up call)",
    col_top_up: "Expected top-up (CNY)",
    loan_security: "Security mix", sec_carbon: "Pledged carbon value (CNY)", sec_mortgage: "Forest-right mortgage (CNY)", sec_guarantee: "Guarantee (CNY)",
    sec_carbon_share: "Carbon share of the security", sec_cover: "Carbon cover of the exposure", sec_unsecured: "Unsecured (CNY)",
    sec_enhancement_only: "Carbon is a credit enhancement only (cover below 20 %)",
    loan_credit: "Credit metrics", loan_credit_none: "Give the borrower's PD to see expected loss, LGD and risk-weighted assets.",
    credit_note: "Carbon credits are not Basel-eligible financial collateral; F-IRB treats them at best as other physical collateral (LGD 25 %, haircut 40 %) and only with a liquid market and a public price. The unsecured figures show the conservative treatment.",
    cr_pd: "PD", cr_ead: "EAD (CNY)", cr_maturity: "Maturity M (years)",
    cr_lgd_secured: "LGD (carbon as other physical collateral)", cr_lgd_unsecured: "LGD (unsecured)", cr_lgd_sim: "Simulated LGD (forced sale)",
    cr_el: "Expected loss (CNY)", cr_el_unsecured: "Expected loss, unsecured (CNY)", cr_k: "IRB capital requirement K",
    cr_rwa: "Risk-weighted assets (CNY)", cr_rwa_unsecured: "Risk-weighted assets, unsecured (CNY)",
    loan_drivers: "Value drivers (each switched off in turn, common random numbers)", col_driver: "Driver", col_value: "Value (CNY)",
    col_value_effect: "Value change ± s.e. (CNY)", col_p_below_any: "P(below the balance in the term)", col_shortfall_effect: "Change in probability ± s.e.",
    col_exp_shortfall: "Expected shortfall ± s.e. (CNY)",
    loan_drivers_note: "Expected shortfall: what the bank would still be owed after a forced sale of the pledge at the end of each year of the term (the balance outstanding less the recovery: the collateral value after the liquidity haircut and liquidation cost, discounted over the sale, plus the forest-right mortgage and the guarantee), summed over the term's years and averaged over the paths. It assumes a forced sale in every year, with no probability of default: it is not an expected credit loss (PD × LGD × EAD), nor the collateral's expected shortfall (ES). The errors of the value and probability changes are the Monte Carlo errors of each change against the full model (paired, common random numbers); the API gives the error of each row's difference from the full model, so a row with a driver switched off reads its value and probability with the error in its change columns (the full model's row shows its own s.e.). A probability of exactly 0 or 1 shows its rule-of-three 95 % interval.",
    loan_sens: "Price sensitivities", col_case: "Case", col_change: "Value change ± s.e. (CNY)",
    quote_heading: "Quote a forest carbon insurance cover", quote_kind: "Cover", cover_stock_loss: "Stock loss", cover_sink_index: "Sink index",
    quote_price: "Agreed price (CNY/tCO₂e)", quote_perils: "Covered perils", peril_fire: "Fire", peril_pine_wilt: "Pine wilt",
    peril_typhoon: "Typhoon", peril_ice_storm: "Ice storm", peril_drought: "Drought",
    quote_deductible: "Annual deductible (CNY)", quote_trigger: "Trigger (measured / expected sink)", quote_limit: "Limit (CNY)",
    quote_limit_default: "default: the sum insured", quote_submit: "Price the cover",
    quote_results_heading: "Quote", dl_slip: "Download the quote slip (HTML)",
    quote_settings: "{kind} · {ha} ha, sum insured {si} CNY · {paths} paths, seed {seed}",
    quote_no_payout: "No expected loss: the cover pays nothing in any simulated year, so its pure premium and risk load are 0.",
    kpi_pure: "Pure premium (CNY)", kpi_pure_se: "Monte Carlo s.e. of the pure premium (CNY)", kpi_gross: "Gross premium (CNY)", kpi_rate: "Rate on the sum insured",
    kpi_per_mu: "Premium per mu (CNY)", kpi_per_ha: "Premium per ha (CNY)", kpi_per_tco2e: "Premium per tCO₂e (CNY)",
    kpi_loss_ratio: "Expected loss ratio", kpi_sum_insured: "Sum insured (CNY)", kpi_p_payout: "P(a payout in the year)",
    quote_basis_heading: "Basis risk and protection gap", quote_basis_help: "Basis risk: the payout on the measured index against the perfect-index payout (the same trigger, limit and participation on the true sink): index error alone. Protection gap: the loss even a perfect index leaves unpaid by the contract's design (trigger, limit, participation).",
    kpi_basis_rmse: "RMSE of payout − perfect-index payout (CNY a year)", kpi_basis_miss: "P(perfect index pays, measured index does not)",
    kpi_basis_extra: "P(measured index pays, perfect index does not)", kpi_gap_mean: "Mean protection gap (CNY a year)", kpi_gap_share: "Protection gap as a share of the true loss",
    chart_quote_ep: "Exceedance curve: annual aggregate payout (AEP)", axis_payout: "Payout (CNY)",
    quote_pml: "Probable maximum loss (OEP: largest event, AEP: the year's total)", col_basis: "Basis", col_return_period: "Return period (years)",
    col_pml: "PML (CNY)", col_ci_low: "95 % CI low (CNY)", col_ci_high: "95 % CI high (CNY)",
    quote_subsidy: "Premium subsidy split (scheme: {scheme})", col_payer: "Payer", col_share: "Share", col_amount: "Amount (CNY)",
    payer_central: "Central budget", payer_provincial: "Provincial budget", payer_city: "City budget", payer_county: "County budget", payer_insured: "Insured",
    upload_problems: "The file has {n} problem(s) (the first {shown} below):", upload_problem_row: "Row {row}, column {column}", upload_problem_col: "Column {column}",
    upload_problem_field: "Field {field}",
    field_invalid: "{field}: invalid value", request_rejected: "The request was refused (HTTP {status}).",
    run_invalid: "The run was refused: {fields}", run_resumed: "Resumed the running job {id} (started before the page was reloaded).",
    case_price: "price {pct}", case_vol: "volatility ×{f}", driver_full: "full model", driver_without: "without {what}",
    driver_price_volatility_and_jumps: "price volatility and jumps", driver_issuance_risk: "issuance risk", driver_growth_uncertainty: "growth uncertainty",
    driver_peril_parameter_uncertainty: "peril-parameter uncertainty", driver_assigned_insurance: "assigned insurance",
    scheme_none: "none", scheme_custom: "custom", scheme_public_welfare_forest: "public-welfare forest", scheme_commercial_forest: "commercial forest",
    scheme_hebei_chestnut_2015: "Hebei chestnut 2015",
    list_sep: ", ", col_balance_mean: "Mean balance (CNY, met top-up calls carried forward)",
    psd_ci: "{sd} [{lo}–{hi}]", kpi_psd_ci: "parameter sd {sd} (95 % CI {lo}–{hi})", psd_ci_sub: "95 % CI {lo}–{hi}",
    psd_ci_note: "In brackets: the parameter sd's 95 % confidence interval (modified large-sample interval of the variance component; more paths narrow it). Where it is not resolved, the interval runs from 0 to an upper bound: all the data can say.",
    col_harvest: "Expected harvest (tCO₂e/yr)", col_harvest_se: "Harvest s.e. (tCO₂e)", col_harvest_psd: "Parameter sd of the harvest [95 % CI] (tCO₂e)",
    nr_flag: "not resolved", nr_sub: "not resolved: needs about {n} paths", nr_sub_sets: "not resolved: fewer than 5 parameter sets",
    nr_note: "Not resolved at {paths} paths: {figures}. Too few paths lie beyond the quantile for the value regression's own error: these figures' intervals are the order statistics' alone and too narrow. About {n} paths would resolve them (the loan form's Monte Carlo paths).",
    nr_note_sets: "Not resolved: {figures}. The run has fewer than 5 parameter sets, so the value regression's own error is not estimated: these figures' intervals are the order statistics' alone and too narrow. Use more paths.",
    nr_fig_max_loan_cny: "largest safe loan", nr_fig_max_loan_target: "largest safe loan at a target shortfall probability of {p}",
    nr_fig_collateral_var95_cny: "VaR 95 %", nr_fig_collateral_es95_cny: "ES 95 %",
    nr_fig_collateral_var99_cny: "VaR 99 %", nr_fig_collateral_es99_cny: "ES 99 %",
    zero_one: "estimated at exactly {p}: 95 % interval [{lo}, {hi}] (rule of three)", zero_one_cell: "{p} (95 % CI {lo}–{hi})",
    zero_one_note: "A probability estimated at exactly 0 or 1 has a standard error of 0, which says nothing: its rule-of-three 95 % interval [0, 3/n] or [1 − 3/n, 1] (n parameter sets) is shown instead.",
    kpi_p_any_call: "P(any top-up call in the term)", kpi_p_short_practice: "P(shortfall) at the practice loan (pledge rate × value today)",
    loan_risk: "Tail risk of the pledge (CNY, today's money)",
    rk_var95: "VaR 95 % (CNY, today's money)", rk_es95: "ES 95 % (CNY, today's money)", rk_var99: "VaR 99 % (CNY, today's money)", rk_es99: "ES 99 % (CNY, today's money)",
    val_ci: "{v} (95 % CI {lo}–{hi})", val_se: "{v} ± {se} (Monte Carlo s.e.)", val_nr: "{text} (not resolved)",
    risk_basis: "VaR: today's value less the 5 % (1 %) quantile of the end-of-term value discounted to today at the discount rate; ES: today's value less the mean (discounted) end-of-term value below that quantile. Both in today's money, comparable with the value today.",
    kpi_eff_limit: "Effective limit (CNY; the triggered sink's value = price × trigger × expected sink)", kpi_expected_sink: "Expected sink (tCO₂e/yr, the model's mean)",
    kpi_trigger_t: "Trigger (tCO₂e/yr)", kpi_limit: "Limit (CNY)", from_run: "estimated from the run ± {se} (Monte Carlo s.e.)",
    subsidy_note_no_central: "",
    subsidy_note_central_scheme: "",
    fin_cancelled: "The job was cancelled: no new result (the previous result stays below).", fields_marked: "See the notes beside the fields marked.",
    loan_over_limit: "The requested loan of {amount} CNY is above the largest safe loan of {max} CNY (target shortfall probability {p}; 95 % CI {lo}–{hi}).",
    loan_over_limit_nr: "That largest safe loan is not resolved at these paths (see the note below).",
    loan_over_pledge: "The requested loan is above the practice loan of {practice} CNY (pledge rate {rate} × value today): the LTV at origination, {ltv}, is above the pledge rate.",
    kpi_practice_loan: "Practice loan (CNY; pledge rate × value today)", practice_sub: "± {se} (Monte Carlo s.e.) · pledge rate {rate}",
    loan_targets: "Largest safe loan by target shortfall probability (CNY, 95 % CI)", target_p: "target shortfall probability {p}",
    ci_cell: "{v} [{lo}–{hi}]", kpi_pure_psd: "Parameter sd of the pure premium (CNY)",
    pml_OEP: "OEP (largest event)", pml_AEP: "AEP (annual aggregate)", col_stock_end_se: "s.e. of the end stock (tCO₂e)",
    col_loss_value_se: "Upper bound of the loss value's s.e. (CNY)", legend_p_payout: "P(a payout in the year)",
    desc_sep: "; ", desc_bar: "{label}: {v}", desc_err: " ± {e}", desc_base: ", {name} {b}", desc_errors: "error bars: {what}",
    desc_exceed_loss: "P(loss > {x}) = {p}", desc_exceed_payout: "P(payout > {x}) = {p}",
    desc_fan: "{year}: {p50} ({lo}–{hi})", desc_fan_pct: "each year: median (5th–95th percentile)", desc_fan_se: "each year: mean (± 2 Monte Carlo s.e.)",
    err_2se: "± 2 Monte Carlo s.e.",
    scenarios: {
      baseline: "Baseline (today's model, nothing changed)",
      carbon_price_crash: "Carbon price crash: -50 % in year 1, volatility 45 %",
      climate_trend_fire: "Climate-trend fire: fire hazard ×1.3 by 2050, ×4 by 2100 (warming pathway)",
      ice_storm_2008: "2008-like ice storm in year 2 (Longquan, Qingyuan, Suichang, Jingning)",
      perfect_storm: "Perfect storm: fire-weather year, ice storm, pine wilt epidemic, super typhoon, price crash, warming",
      pine_wilt_epidemic: "Pine wilt epidemic from year 1 (Longquan, Qingyuan; parcel infection ×2)",
      severe_fire_weather: "Severe fire-weather year 1 (weather factor 3, city-wide), drought in year 1",
      super_typhoon: "Super typhoon in year 1 over Qingtian (intensity 2.5), storm severity ×1.3",
      transition_price_surge: "Transition price surge (NGFS Delayed Transition path)",
    },
    pathways: {
      current: "Today's climate (every multiplier 1.0)",
      warming: "High-warming pathway: fire hazard ×1.3 by 2050 and ×3 by 2100",
    },
    species: {
      chinese_fir: "Chinese fir", masson_pine: "Masson pine", other_pines: "Other pines", cryptomeria: "Cryptomeria",
      mixed_conifer: "Mixed conifer", mixed_conifer_broadleaf: "Mixed conifer-broadleaf", evergreen_broadleaf: "Evergreen broadleaf",
      hard_broadleaf: "Hard broadleaf", oaks: "Oaks", moso_bamboo: "Moso bamboo", slash_pine: "Slash pine", schima: "Schima", liquidambar: "Sweetgum",
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

/** A library stress scenario's title in the current language (its id, e.g. "super_typhoon"); null if unknown. */
export function scenarioTitle(id) { return DICT[lang].scenarios[id] ?? null; }

/** A climate pathway's title in the current language (its short id, e.g. "warming"); null if unknown. */
export function pathwayTitle(id) { return DICT[lang].pathways[id] ?? null; }

/** A loan valuation's price-sensitivity case ("price -50%", "volatility x1.5") in the current language. */
export function caseLabel(label) {
  const s = String(label ?? "");
  let m = /^price ([+-]?\d+(?:\.\d+)?%)$/.exec(s);
  if (m) return t("case_price", { pct: m[1] });
  m = /^volatility x(\d+(?:\.\d+)?)$/.exec(s);
  if (m) return t("case_vol", { f: m[1] });
  return s;
}

/** A value driver's row ("full model", "without fire", "without issuance risk") in the current language. */
export function driverLabel(label) {
  const s = String(label ?? "");
  if (s === "full model") return t("driver_full");
  const m = /^without (.+)$/.exec(s);
  if (!m) return s;
  const slug = m[1].replace(/[^a-z0-9]+/g, "_");
  const key = DICT.en[`peril_${slug}`] !== undefined ? `peril_${slug}` : DICT.en[`driver_${slug}`] !== undefined ? `driver_${slug}` : null;
  return key ? t("driver_without", { what: t(key) }) : s;
}

/** A premium subsidy scheme's name in the current language ("none", "commercial_forest", ...). */
export function schemeName(id) {
  const key = `scheme_${id}`;
  return DICT.en[key] !== undefined ? t(key) : String(id ?? "");
}

/** The quote's subsidy note in the current language: one of the engine's two notes, by its opening words;
 * null when the note is another (show the server's text). */
export function subsidyNote(note) {
  const s = String(note ?? "");
  const key = s.startsWith("No premium subsidy by default") ? "subsidy_note_no_central"
    : s.startsWith("The scheme's central share assumes") ? "subsidy_note_central_scheme" : null;
  if (!key) return null;
  return DICT[lang][key] || s;  // English: the engine's own words
}

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

/**
 * A parameter (epistemic) sd as the dashboard shows it: the rule of the HTML reports
 * (finance_engine/reports/html.py, parameter_sd_resolved). The engine estimates it by variance components
 * over the paths' parameter sets and clips an estimate below zero at 0: that 0 means "not resolved" (the
 * paths do not resolve the parameters' spread), unless the figure does not vary at all (its Monte Carlo
 * error `mcSe` is exactly 0: an exact 0, such as the baseline's difference from itself). A run without
 * parameter uncertainty (`on` false) has none, nor has a figure whose sd is absent: null (show nothing).
 * Returns {value, resolved, text}.
 */
export function paramSd(sd, { mcSe = null, on = true, digits = 0, ci = null } = {}) {
  if (on === false || sd === null || sd === undefined || !Number.isFinite(sd)) return null;
  const resolved = sd !== 0 || mcSe === 0;
  const text = resolved ? fmt(sd, digits) : t("psd_not_resolved");
  // the sd's own 95 % interval (summaries and accounts carry it; a clipped 0 reads "not resolved [0–high]")
  const [lo, hi] = Array.isArray(ci) ? ci : [null, null];
  const hasCi = Number.isFinite(lo) && Number.isFinite(hi);
  const out = { value: sd, resolved, text, ci: hasCi ? [lo, hi] : null,
    full: hasCi ? t("psd_ci", { sd: text, lo: fmt(lo, digits), hi: fmt(hi, digits) }) : text };
  if (hasCi) out.kpiText = t("kpi_psd_ci", { sd: text, lo: fmt(lo, digits), hi: fmt(hi, digits) });
  return out;
}

/** Whether a result's run drew the uncertain parameters: its provenance's switches say so (the engine's
 * default, and the service's runs, is yes; results without the switch are taken as the default). */
export function parameterUncertaintyOn(provenance) {
  return provenance?.switches?.parameter_uncertainty !== false;
}

export function fmtPct(x, digits = 1) {
  if (x === null || x === undefined || !Number.isFinite(x)) return "—";
  return `${fmt(100 * x, digits)} %`;
}
