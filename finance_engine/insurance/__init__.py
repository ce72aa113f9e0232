"""Loss-table insurance and reinsurance maths (issue 6): layers, risk measures, premiums, subsidies.

Works on event loss tables (ELT: ``year``, ``event_id``, ``loss``), year loss tables and numpy arrays
of annual losses; it needs nothing from the Monte Carlo engine. Modules:

``tables``         ELT validation, year loss table (annual aggregate, annual max occurrence)
``layers``         occurrence / aggregate XoL, aggregate terms, reinstatements, quota share
``risk_measures``  AAL, OEP/AEP curves, PML with order-statistic CIs, VaR, TVaR, survival function
``loadings``       premium principles (expected value, sd, variance, Wang, PH, cost of capital), gross premium
``reinsurance``    rate on line, multiple, insurer capital gross and net of XoL / quota share
``subsidy``        Chinese forest-insurance premium subsidy split and the rate-adjustment band
``defaults``       loader of ``finance_engine/data/insurance_defaults.yaml``
``covers``         cover types on simulated portfolios: stock-loss indemnity, sink index, price floor
``basis_risk``     basis risk of an index cover (against its perfect-index payout) and its protection gap
``quote``          the policy quote on the engine: premium build-up, risk outputs, reinsurance, provenance
"""

from .defaults import InsuranceDefaults, load_insurance_defaults
from .layers import (LayerResult, Reinstatements, layer_loss, occurrence_layer_annual, price_annual_layer,
                     price_layer, price_layer_events, quota_share)
from .loadings import (GrossPremium, PremiumResult, cost_of_capital_premium, distortion_premium,
                       expected_value_premium, gross_premium, proportional_hazard_premium,
                       standard_deviation_premium, variance_premium, wang_transform_premium)
from .reinsurance import CapitalResult, LayerQuote, insurer_capital, layer_quote
from .risk_measures import (AALResult, aal, ep_curves, exceedance_curve, pml, pml_table, quantile_ci,
                            survival_function, tvar, var, var_tvar_table)
from .subsidy import (RateBandCheck, SubsidyShares, SubsidySplit, check_central_eligibility,
                      check_rate_adjustment, split_premium, subsidy_shares)
from .basis_risk import BasisRisk, ProtectionGap, basis_risk, protection_gap
from .covers import (CoverError, CoverLosses, Deductible, PriceFloorCover, SinkIndexCover, StockLossCover,
                     cover_from_dict, price_floor_losses, sink_index_losses, stock_loss_losses)
from .quote import (LayerSpec, Loading, Quote, default_loading, layer_premium, quote, quote_losses,
                    risk_loaded_premium)
from .tables import (EventLosses, InsuranceInputError, YearIndexError, annual_aggregate, annual_max_occurrence,
                     block_mean_se, elt_columns, event_losses, mc_block_years, year_loss_table)

__all__ = [
    "BasisRisk", "CoverError", "CoverLosses", "Deductible", "LayerSpec", "Loading", "PriceFloorCover", "Quote",
    "SinkIndexCover", "StockLossCover", "basis_risk", "protection_gap", "ProtectionGap", "cover_from_dict", "default_loading", "layer_premium",
    "price_floor_losses",
    "quote", "quote_losses", "risk_loaded_premium", "sink_index_losses", "stock_loss_losses",
    "AALResult", "CapitalResult", "EventLosses", "YearIndexError", "elt_columns", "GrossPremium", "InsuranceDefaults", "InsuranceInputError",
    "LayerQuote", "LayerResult", "PremiumResult", "RateBandCheck", "Reinstatements", "SubsidyShares",
    "SubsidySplit", "aal", "annual_aggregate", "annual_max_occurrence", "block_mean_se", "check_central_eligibility",
    "check_rate_adjustment", "cost_of_capital_premium", "distortion_premium", "ep_curves", "event_losses",
    "exceedance_curve", "expected_value_premium", "gross_premium", "insurer_capital", "layer_loss",
    "layer_quote", "load_insurance_defaults", "mc_block_years", "occurrence_layer_annual", "pml", "pml_table",
    "price_annual_layer", "price_layer", "price_layer_events", "proportional_hazard_premium", "quantile_ci",
    "quota_share", "split_premium", "standard_deviation_premium", "subsidy_shares", "survival_function", "tvar",
    "var", "var_tvar_table", "variance_premium", "wang_transform_premium", "year_loss_table",
]
